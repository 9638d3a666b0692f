mod control;
mod guard;
mod protocol;
mod ring;

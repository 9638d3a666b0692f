mod control;
mod protocol;
mod ring;
mod guard;

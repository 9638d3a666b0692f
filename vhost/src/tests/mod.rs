mod control;
mod protocol;
mod ring;

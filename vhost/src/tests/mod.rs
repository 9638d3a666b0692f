mod protocol;
mod ring;

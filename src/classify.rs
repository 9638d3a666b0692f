//! Classification of frames to traffic classes: filled by the TAS work.

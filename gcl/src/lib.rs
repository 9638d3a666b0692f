//! placeholder: filled by the gcl work

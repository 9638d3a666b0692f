//! placeholder: filled by the vhost work

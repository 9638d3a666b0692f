//! Egress gate stage (802.1Qbv time-aware shaper): filled by the TAS work.

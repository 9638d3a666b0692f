//! Clocks (TAI, PHC, NIC, simulated) and TSC interpolation: filled by the TAS work.

//! Offline simulator.

//! The xengtd daemon as a library: configuration, hotplug, the control protocol.
#![forbid(unsafe_code)]

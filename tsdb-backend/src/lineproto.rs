//! Line-protocol parser (being written).

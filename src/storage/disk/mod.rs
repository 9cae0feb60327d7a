//! The disk store: a store directory's files.

pub mod catalogue;

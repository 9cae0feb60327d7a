//! The catalogue's record of one node: what the tree needs to rebuild it after a remount.
//! (Placeholder layout; the catalogue work fills it in.)

/// One node of the namespace as saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub ino: u64,
}

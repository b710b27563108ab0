//! The test server's node tree: values, permissions, implicit parents, recursive removal.

use std::collections::BTreeMap;

use crate::xenstore::wire::{join_fields, PAYLOAD_MAX};
use crate::xenstore::{Access, XsErrno, XsPerm};

/// One node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Raw value.
    pub value: Vec<u8>,
    /// Permissions; entry 0 = owner/default.
    pub perms: Vec<XsPerm>,
    /// Generation count: changes whenever the node or its child list changes (what
    /// `DIRECTORY_PART` reports, like cxenstored's `node->gen`).
    pub gen: u64,
}

/// A change that watches must hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The node written/created/removed.
    pub path: String,
    /// True when the node was removed (watches on its descendants fire too).
    pub removed: bool,
}

/// The tree, keyed by absolute canonical path.
#[derive(Clone, Debug)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    next_gen: u64,
}

impl Default for Tree {
    fn default() -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "/".to_string(),
            Node {
                value: Vec::new(),
                perms: vec![XsPerm::new(0, Access::None)],
                gen: 0,
            },
        );
        Tree { nodes, next_gen: 1 }
    }
}

/// Parent path of an absolute path ("/" for top-level nodes, `None` for "/").
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => path.get(..i),
        None => None,
    }
}

fn child_prefix(path: &str) -> String {
    if path == "/" {
        "/".to_string()
    } else {
        format!("{path}/")
    }
}

impl Tree {
    /// Looks a node up.
    pub fn get(&self, path: &str) -> Result<&Node, XsErrno> {
        self.nodes.get(path).ok_or(XsErrno::ENOENT)
    }

    fn new_gen(&mut self) -> u64 {
        let g = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        g
    }

    /// Gives `path` (if it exists) a new generation count.
    fn touch(&mut self, path: &str) {
        let g = self.new_gen();
        if let Some(n) = self.nodes.get_mut(path) {
            n.gen = g;
        }
    }

    fn create_parents(&mut self, path: &str, changes: &mut Vec<Change>) {
        let mut missing = Vec::new();
        let mut cur = path;
        while !self.nodes.contains_key(cur) {
            missing.push(cur.to_string());
            match parent(cur) {
                Some(p) => cur = p,
                None => break,
            }
        }
        let mut perms = self
            .nodes
            .get(cur)
            .map(|n| n.perms.clone())
            .unwrap_or_default();
        if !missing.is_empty() {
            // `cur` gains a child.
            let cur = cur.to_string();
            self.touch(&cur);
        }
        for p in missing.into_iter().rev() {
            let node = Node {
                value: Vec::new(),
                perms: perms.clone(),
                gen: self.new_gen(),
            };
            perms.clone_from(&node.perms);
            self.nodes.insert(p.clone(), node);
            changes.push(Change {
                path: p,
                removed: false,
            });
        }
    }

    /// Writes a value, creating parents.
    pub fn write(&mut self, path: &str, value: &[u8]) -> Vec<Change> {
        let mut changes = Vec::new();
        self.create_parents(path, &mut changes);
        if let Some(n) = self.nodes.get_mut(path) {
            n.value = value.to_vec();
        }
        self.touch(path);
        if !changes.iter().any(|c| c.path == path) {
            changes.push(Change {
                path: path.to_string(),
                removed: false,
            });
        }
        changes
    }

    /// Creates a node if missing.
    pub fn mkdir(&mut self, path: &str) -> Vec<Change> {
        let mut changes = Vec::new();
        self.create_parents(path, &mut changes);
        changes
    }

    /// Removes a node and its descendants. A missing node whose parent exists is not an
    /// error (cxenstored behaviour); a missing parent is ENOENT.
    pub fn rm(&mut self, path: &str) -> Result<Vec<Change>, XsErrno> {
        if path == "/" {
            return Err(XsErrno::EINVAL);
        }
        if !self.nodes.contains_key(path) {
            return match parent(path) {
                Some(p) if self.nodes.contains_key(p) => Ok(Vec::new()),
                _ => Err(XsErrno::ENOENT),
            };
        }
        let prefix = child_prefix(path);
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &doomed {
            self.nodes.remove(k);
        }
        self.nodes.remove(path);
        if let Some(p) = parent(path) {
            let p = p.to_string();
            self.touch(&p);
        }
        Ok(vec![Change {
            path: path.to_string(),
            removed: true,
        }])
    }

    /// Names of the direct children.
    pub fn directory(&self, path: &str) -> Result<Vec<String>, XsErrno> {
        self.get(path)?;
        let prefix = child_prefix(path);
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| k.get(prefix.len()..))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect())
    }

    /// The child list as xenstored stores it: each name followed by a NUL.
    pub fn child_list(&self, path: &str) -> Result<Vec<u8>, XsErrno> {
        Ok(join_fields(&self.directory(path)?))
    }

    /// A `DIRECTORY_PART` reply like cxenstored's: the generation count, then whole names
    /// from byte `offset` of the child list while the payload stays within 4096 bytes,
    /// plus an empty name if the list ends in this part.
    pub fn directory_part(&self, path: &str, offset: usize) -> Result<Vec<u8>, XsErrno> {
        let gen = self.get(path)?.gen;
        let list = self.child_list(path)?;
        let mut out = join_fields(&[gen.to_string()]);
        let rest = list.get(offset..).unwrap_or_default();
        let mut taken = 0usize;
        for name in rest.split_inclusive(|b| *b == 0) {
            // Room for this name and the final empty one.
            if out.len() + name.len() + 1 > PAYLOAD_MAX {
                break;
            }
            out.extend_from_slice(name);
            taken += name.len();
        }
        if taken == rest.len() {
            out.push(0);
        }
        Ok(out)
    }

    /// Replaces a node's permissions.
    pub fn set_perms(&mut self, path: &str, perms: Vec<XsPerm>) -> Result<Vec<Change>, XsErrno> {
        let node = self.nodes.get_mut(path).ok_or(XsErrno::ENOENT)?;
        if perms.is_empty() {
            return Err(XsErrno::EINVAL);
        }
        node.perms = perms;
        self.touch(path);
        Ok(vec![Change {
            path: path.to_string(),
            removed: false,
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_creates_parents_and_rm_is_recursive() {
        let mut t = Tree::default();
        let ch = t.write("/a/b/c", b"v");
        assert_eq!(ch.len(), 3);
        assert_eq!(t.directory("/").unwrap(), vec!["a"]);
        assert_eq!(t.directory("/a").unwrap(), vec!["b"]);
        assert_eq!(t.get("/a/b/c").unwrap().value, b"v");
        t.write("/a/bb", b"");
        assert_eq!(t.directory("/a").unwrap(), vec!["b", "bb"]);
        t.rm("/a/b").unwrap();
        assert!(t.get("/a/b/c").is_err());
        assert_eq!(t.directory("/a").unwrap(), vec!["bb"]);
        assert_eq!(t.rm("/a/zz").unwrap(), vec![]);
        assert_eq!(t.rm("/x/y"), Err(XsErrno::ENOENT));
        assert_eq!(t.rm("/"), Err(XsErrno::EINVAL));
    }

    #[test]
    fn parents_inherit_perms() {
        let mut t = Tree::default();
        t.write("/p", b"");
        t.set_perms("/p", vec![XsPerm::new(3, Access::Read)])
            .unwrap();
        t.write("/p/q/r", b"");
        assert_eq!(
            t.get("/p/q/r").unwrap().perms,
            vec![XsPerm::new(3, Access::Read)]
        );
    }

    #[test]
    fn generation_changes_with_the_child_list() {
        let mut t = Tree::default();
        t.mkdir("/d");
        let g0 = t.get("/d").unwrap().gen;
        t.write("/d/a", b"");
        let g1 = t.get("/d").unwrap().gen;
        assert_ne!(g0, g1);
        // Writing a child's value leaves the parent's list (and generation) alone.
        t.write("/d/a", b"v");
        assert_eq!(t.get("/d").unwrap().gen, g1);
        t.rm("/d/a").unwrap();
        assert_ne!(t.get("/d").unwrap().gen, g1);
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/"), None);
    }
}

//! The read-only view of the tree a request is judged against (the target's tip, or what the
//! requests before it in a batch made of it), one for every rule: validation, limits, the
//! paths a request touches and the risk tiers all read it through [`TreeView`], which
//! [`CachedTree`] implements over a repository and tests implement in memory.

use std::collections::HashMap;

/// What a path is in the target tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeEntry {
    File,
    Symlink,
    Dir,
    Submodule,
}

/// Read access to the tree a request is judged against.
pub trait TreeView {
    /// What `path` is at the target, if anything.
    fn entry(&self, path: &str) -> Option<TreeEntry>;
    /// The content of the blob at `path` (a file or a symlink's target).
    fn blob(&self, path: &str) -> Option<Vec<u8>>;
    /// The path of every symlink in the tree. Reads the whole tree: asked only about a
    /// request that makes a symlink.
    fn symlinks(&self) -> Vec<String>;
    /// The size of the blob at `path`.
    fn size(&self, path: &str) -> Option<u64> {
        self.blob(path).map(|b| b.len() as u64)
    }
    /// The blob a patch's `index` line names (a full or abbreviated id), if the repository
    /// has it and it has at most `cap` bytes.
    fn object(&self, _id: &str, _cap: usize) -> Option<Vec<u8>> {
        None
    }
    /// The mode of the entry at `path` (`0o100644`, `0o100755`, `0o120000`, `0o160000`,
    /// `0o040000`), if there is one. By default from [`TreeView::entry`], which does not
    /// tell an executable file.
    fn mode(&self, path: &str) -> Option<u32> {
        Some(match self.entry(path)? {
            TreeEntry::File => 0o100644,
            TreeEntry::Symlink => 0o120000,
            TreeEntry::Dir => 0o040000,
            TreeEntry::Submodule => 0o160000,
        })
    }
    /// The target of the symlink at `path`, if it is one.
    fn link_target(&self, path: &str) -> Option<String> {
        (self.entry(path)? == TreeEntry::Symlink)
            .then(|| self.blob(path))
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }
    /// Every symlink at `dir`, at one of its ancestors, or below it (at most `limit` entries
    /// read), with its target. By default from [`TreeView::symlinks`].
    fn links_around(&self, dir: &str, limit: usize) -> Vec<(String, String)> {
        let comps: Vec<&str> = dir.split('/').collect();
        for n in 1..comps.len() {
            let up = comps[..n].join("/");
            if let Some(t) = self.link_target(&up) {
                return vec![(up, t)];
            }
        }
        let below = format!("{dir}/");
        self.symlinks()
            .into_iter()
            .filter(|p| *p == dir || p.starts_with(&below))
            .take(limit)
            .filter_map(|p| self.link_target(&p).map(|t| (p, t)))
            .collect()
    }
}

/// The target's tree as `validate::against_target` reads it: each directory on a path looked up is
/// read once, however many checks ask, and searched without being decoded. A request's checks look its paths up
/// several times, and in a directory of thousands of files every reading of it inflated and
/// copied the whole tree again.
pub struct CachedTree<'repo> {
    repo: &'repo gix::Repository,
    /// Directories by path (`""`: the root), as read (entries are found in the encoded tree,
    /// without decoding the others); `None`: not a directory there.
    dirs: std::cell::RefCell<HashMap<String, Option<std::rc::Rc<Vec<u8>>>>>,
}

impl<'repo> CachedTree<'repo> {
    pub fn new(repo: &'repo gix::Repository, root: Vec<u8>) -> Self {
        let dirs = HashMap::from([(String::new(), Some(std::rc::Rc::new(root)))]);
        CachedTree {
            repo,
            dirs: std::cell::RefCell::new(dirs),
        }
    }

    /// The tree `root` of `repo`; a tree that cannot be read holds nothing.
    pub fn at(repo: &'repo gix::Repository, root: gix::ObjectId) -> Self {
        let data = repo
            .find_tree(root)
            .ok()
            .map(|t| std::rc::Rc::new(t.detach().data));
        CachedTree {
            repo,
            dirs: std::cell::RefCell::new(HashMap::from([(String::new(), data)])),
        }
    }

    /// The encoded tree of directory `dir`, if there is one.
    fn dir(&self, dir: &str) -> Option<std::rc::Rc<Vec<u8>>> {
        let known = self.dirs.borrow().get(dir).cloned();
        if let Some(known) = known {
            return known;
        }
        let tree = self.find(dir).and_then(|(mode, id)| {
            let tree = mode.is_tree().then(|| self.repo.find_tree(id).ok())??;
            Some(std::rc::Rc::new(tree.detach().data))
        });
        self.dirs.borrow_mut().insert(dir.to_owned(), tree.clone());
        tree
    }

    /// The mode and id of the entry at `path`.
    fn find(&self, path: &str) -> Option<(gix::objs::tree::EntryMode, gix::ObjectId)> {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name.is_empty() {
            return None;
        }
        let dir = self.dir(parent)?;
        gix::objs::TreeRefIter::from_bytes(&dir, self.repo.object_hash())
            .filter_map(Result::ok)
            .find(|e| e.filename == name.as_bytes())
            .map(|e| (e.mode, e.oid.to_owned()))
    }

    fn blob_text(&self, id: gix::ObjectId) -> Option<String> {
        let blob = self.repo.find_blob(id).ok()?;
        Some(String::from_utf8_lossy(&blob.data).into_owned())
    }

    fn walk(
        &self,
        dir: &str,
        tree: gix::ObjectId,
        budget: &mut usize,
        out: &mut Vec<(String, String)>,
    ) {
        let Ok(t) = self.repo.find_tree(tree) else {
            return;
        };
        let Ok(decoded) = t.decode() else { return };
        let entries: Vec<_> = decoded
            .entries
            .iter()
            .map(|e| (e.mode, e.filename.to_string(), e.oid.to_owned()))
            .collect();
        for (mode, name, oid) in entries {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            let path = format!("{dir}/{name}");
            if mode.is_link() {
                if let Some(target) = self.blob_text(oid) {
                    out.push((path, target));
                }
            } else if mode.is_tree() {
                self.walk(&path, oid, budget, out);
            }
        }
    }
}

impl TreeView for CachedTree<'_> {
    fn entry(&self, path: &str) -> Option<TreeEntry> {
        let (mode, _) = self.find(path)?;
        Some(if mode.is_tree() {
            TreeEntry::Dir
        } else if mode.is_link() {
            TreeEntry::Symlink
        } else if mode.is_commit() {
            TreeEntry::Submodule
        } else {
            TreeEntry::File
        })
    }

    fn blob(&self, path: &str) -> Option<Vec<u8>> {
        let (mode, id) = self.find(path)?;
        if !mode.is_blob_or_symlink() {
            return None;
        }
        Some(self.repo.find_object(id).ok()?.detach().data)
    }

    fn symlinks(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Some(root) = self.dir("") else {
            return out;
        };
        let mut stack = vec![(String::new(), root.as_ref().clone())];
        while let Some((dir, data)) = stack.pop() {
            for e in gix::objs::TreeRefIter::from_bytes(&data, self.repo.object_hash())
                .filter_map(Result::ok)
            {
                let name = String::from_utf8_lossy(e.filename);
                let path = if dir.is_empty() {
                    name.into_owned()
                } else {
                    format!("{dir}/{name}")
                };
                if e.mode.is_link() {
                    out.push(path);
                } else if e.mode.is_tree()
                    && let Ok(tree) = self.repo.find_tree(e.oid.to_owned())
                {
                    stack.push((path, tree.detach().data));
                }
            }
        }
        out
    }

    fn size(&self, path: &str) -> Option<u64> {
        let (mode, id) = self.find(path)?;
        if !mode.is_blob_or_symlink() {
            return None;
        }
        Some(self.repo.find_header(id).ok()?.size())
    }

    fn object(&self, id: &str, cap: usize) -> Option<Vec<u8>> {
        let id = crate::git::tree::find_blob_id(self.repo, id)?;
        if self.repo.find_header(id).ok()?.size() > cap as u64 {
            return None;
        }
        Some(self.repo.find_object(id).ok()?.detach().data)
    }

    fn mode(&self, path: &str) -> Option<u32> {
        self.find(path).map(|(m, _)| mode_bits(m))
    }

    fn link_target(&self, path: &str) -> Option<String> {
        let (mode, id) = self.find(path)?;
        mode.is_link().then(|| self.blob_text(id)).flatten()
    }

    fn links_around(&self, dir: &str, limit: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let comps: Vec<&str> = dir.split('/').collect();
        for n in 1..comps.len() {
            let up = comps[..n].join("/");
            match self.find(&up) {
                Some((m, id)) if m.is_link() => {
                    if let Some(t) = self.blob_text(id) {
                        out.push((up, t));
                    }
                    return out;
                }
                Some((m, _)) if m.is_tree() => {}
                _ => return out,
            }
        }
        match self.find(dir) {
            Some((m, id)) if m.is_link() => {
                if let Some(t) = self.blob_text(id) {
                    out.push((dir.to_owned(), t));
                }
            }
            Some((m, id)) if m.is_tree() => {
                let mut budget = limit;
                self.walk(dir, id, &mut budget, &mut out);
            }
            _ => {}
        }
        out
    }
}

fn mode_bits(mode: gix::objs::tree::EntryMode) -> u32 {
    use gix::objs::tree::EntryKind;
    match mode.kind() {
        EntryKind::Tree => 0o040000,
        EntryKind::Blob => 0o100644,
        EntryKind::BlobExecutable => 0o100755,
        EntryKind::Link => 0o120000,
        EntryKind::Commit => 0o160000,
    }
}

//! Reading and writing trees: a branch's tip, a commit's tree, and an editor whose trees are
//! written into the pack hyperion is writing (see [`crate::git::pack`]).

use gix::ObjectId;

use crate::error::{Error, Result};

/// The commit a ref points at, if it exists.
pub fn read_tip(repo: &gix::Repository, name: &str) -> Result<Option<ObjectId>> {
    crate::git::refs::read(repo, name)
}

/// The tree of `commit`.
pub fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    repo.find_commit(commit)
        .and_then(|c| c.tree_id().map(|t| t.detach()))
        .map_err(|e| Error::git(format!("cannot read the tree of {commit}: {e}")))
}

/// An editor of the tree `base`, for [`write_tree`].
pub fn edit_tree(repo: &gix::Repository, base: ObjectId) -> Result<gix::objs::tree::Editor<'_>> {
    let root: gix::objs::Tree = repo
        .find_tree(base)
        .and_then(|t| t.decode().map(Into::into))
        .map_err(|e| Error::git(format!("cannot read the tree {base}: {e}")))?;
    Ok(gix::objs::tree::Editor::new(
        root,
        &repo.objects,
        repo.object_hash(),
    ))
}

/// Write the trees `editor` changed into the repository's object memory, and return the
/// root's id. Unlike gix's own tree editor, this does not look up every entry of every
/// written tree in the object database first (in a directory of 1,000 files, 1,000 lookups
/// through every pack index, the largest cost of a request on a large repository): the
/// entries are what the tree held plus blobs hyperion just wrote, at paths validated when
/// the request was.
pub fn write_tree(
    repo: &gix::Repository,
    editor: &mut gix::objs::tree::Editor<'_>,
) -> Result<ObjectId> {
    let mut buf = Vec::new();
    editor.write(|tree| {
        use gix::objs::WriteTo;
        buf.clear();
        tree.write_to(&mut buf)
            .map_err(|e| Error::git(format!("cannot write a tree: {e}")))?;
        crate::git::pack::write_object(repo, gix::objs::Kind::Tree, &buf)
    })
}

/// The blob a patch's `index` line names (full or abbreviated), if the repository has one.
pub fn find_blob_id(repo: &gix::Repository, hex: &str) -> Option<ObjectId> {
    if hex.bytes().all(|b| b == b'0') {
        return None;
    }
    let id = if hex.len() == 40 {
        ObjectId::from_hex(hex.as_bytes()).ok()?
    } else {
        let prefix = gix::hash::Prefix::from_hex(hex).ok()?;
        repo.objects.lookup_prefix(prefix, None).ok()??.ok()?
    };
    let header = repo.find_header(id).ok()?;
    (header.kind() == gix::object::Kind::Blob).then_some(id)
}

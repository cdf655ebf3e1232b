//! Requests whose chain lost objects: a ref that points at a commit, tree or blob the object
//! database no longer has (written by a version that let git's maintenance prune objects
//! before their ref existed, or removed by hand). Such a request can neither be read nor
//! moved; `doctor` reports it (`store.missing_object`), and `doctor --repair` sets it aside
//! under [`LOST_PREFIX`] so that nothing takes it for a live request.

use gix::ObjectId;
use gix::objs::Kind;
use gix::objs::WriteTo;

use crate::error::Result;
use crate::git::pack::Place;
use crate::queue::store::Store;

/// Where a request whose objects are missing is set aside.
pub const LOST_PREFIX: &str = "refs/hyperion/lost/";

/// At most this many missing objects are named.
const NAMED: usize = 8;

/// The objects of the chain at `tip` (its commits, their trees and blobs) that the object
/// database does not have; empty when the chain is complete.
pub fn missing(repo: &gix::Repository, tip: ObjectId) -> Vec<ObjectId> {
    let mut missing = Vec::new();
    walk(
        &repo.objects,
        [tip],
        &mut Default::default(),
        Blobs::Check,
        |id, _, place| {
            if matches!(place, Place::Missing) {
                missing.push(id);
            }
            missing.len() < NAMED
        },
    );
    missing
}

/// Every object the chains at `tips` reach (commits, trees, blobs) and `seen` does not hold,
/// each once, in the order found, with its kind and where it lies: what an archive of them
/// must hold (`seen` gets them, so that an archive written in parts holds each object once);
/// each chain counts in `pages`. `odb` is a [`crate::git::pack::locator`]. `Err` names an
/// object that is missing.
pub fn reachable(
    odb: &gix::OdbHandle,
    tips: impl IntoIterator<Item = ObjectId>,
    seen: &mut std::collections::HashSet<ObjectId>,
    pages: &mut crate::git::os::PageBudget,
) -> std::result::Result<Vec<(ObjectId, Kind, Place)>, ObjectId> {
    let mut out = Vec::new();
    let mut gone = None;
    for tip in tips {
        pages.read_one();
        walk(odb, [tip], seen, Blobs::Locate, |id, kind, place| {
            if matches!(place, Place::Missing) {
                gone = Some(id);
            } else {
                out.push((id, kind, place));
            }
            gone.is_none()
        });
        if gone.is_some() {
            break;
        }
    }
    gone.map_or(Ok(out), Err)
}

/// How a walk treats blobs, the only objects it need not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blobs {
    /// Whether each one is there.
    Check,
    /// Where each one is (and so whether it is there).
    Locate,
}

/// Walk what `tips` reach, skipping what is in `seen`: `visit(id, kind, place)` for each
/// object, until it returns false. A tree entry's kind is taken from its mode, so a missing
/// object still has one. [`Blobs::Locate`] needs `odb` to be a [`crate::git::pack::locator`].
fn walk(
    odb: &gix::OdbHandle,
    tips: impl IntoIterator<Item = ObjectId>,
    seen: &mut std::collections::HashSet<ObjectId>,
    blobs: Blobs,
    mut visit: impl FnMut(ObjectId, Kind, Place) -> bool,
) {
    use gix::odb::pack::Find;
    let mut todo: Vec<(ObjectId, Kind)> = tips.into_iter().map(|t| (t, Kind::Commit)).collect();
    let mut buf = Vec::new();
    while let Some((id, kind)) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        if kind == Kind::Blob {
            let place = match blobs {
                Blobs::Check if odb.contains(&id) => Place::Elsewhere,
                Blobs::Locate => match odb.location_by_oid(&id, &mut buf) {
                    Ok(Some(at)) => Place::Packed(at),
                    _ if odb.contains(&id) => Place::Elsewhere,
                    _ => Place::Missing,
                },
                Blobs::Check => Place::Missing,
            };
            if !visit(id, kind, place) {
                return;
            }
            continue;
        }
        let Ok(Some((data, at))) =
            odb.try_find_cached(&id, &mut buf, &mut gix::odb::pack::cache::Never)
        else {
            if !visit(id, kind, Place::Missing) {
                return;
            }
            continue;
        };
        let found = data.kind;
        match found {
            Kind::Commit => {
                if let Ok(c) = gix::objs::CommitRef::from_bytes(data.data, gix::hash::Kind::Sha1) {
                    todo.push((c.tree(), Kind::Tree));
                    todo.extend(c.parents().map(|p| (p, Kind::Commit)));
                }
            }
            Kind::Tree => {
                if let Ok(t) = gix::objs::TreeRef::from_bytes(data.data, gix::hash::Kind::Sha1) {
                    for e in t.entries {
                        if e.mode.is_tree() {
                            todo.push((e.oid.to_owned(), Kind::Tree));
                        } else if e.mode.is_blob() || e.mode.is_link() {
                            todo.push((e.oid.to_owned(), Kind::Blob));
                        }
                    }
                }
            }
            _ => {}
        }
        if !visit(id, found, at.map_or(Place::Elsewhere, Place::Packed)) {
            return;
        }
    }
}

/// Set request `id` (at `tip`, missing `missing`) aside: `refs/hyperion/lost/<id>` gets a
/// commit of its own (complete, so that git's `fsck` and `gc` accept it) whose `lost.json`
/// names the request, its old tip and the missing objects, and the request's ref is deleted.
/// Returns the new lost commit.
pub fn set_aside(store: &Store, id: &str, tip: ObjectId, missing: &[ObjectId]) -> Result<ObjectId> {
    let repo = store.repo();
    let _hold = crate::git::pack::hold();
    let now = jiff::Timestamp::now();
    let about = serde_json::json!({
        "id": id,
        "ref": Store::ref_name(id),
        "tip": tip.to_string(),
        "missing": missing.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        "at": now.to_string(),
    });
    let json = serde_json::to_vec_pretty(&about).expect("JSON in memory");
    let blob = crate::git::pack::write_object(repo, Kind::Blob, &json)?;
    let mut buf = Vec::new();
    gix::objs::Tree {
        entries: vec![gix::objs::tree::Entry {
            mode: gix::objs::tree::EntryKind::Blob.into(),
            filename: "lost.json".into(),
            oid: blob,
        }],
    }
    .write_to(&mut buf)
    .map_err(|e| crate::Error::object("could not write a tree", e))?;
    let tree = crate::git::pack::write_object(repo, Kind::Tree, &buf)?;
    let sig = gix::actor::Signature {
        name: "doctor".into(),
        email: "hyperion@localhost".into(),
        time: gix::date::Time {
            seconds: now.as_second(),
            offset: 0,
        },
    };
    let commit = gix::objs::Commit {
        tree,
        parents: Default::default(),
        author: sig.clone(),
        committer: sig,
        encoding: None,
        message: format!(
            "lost: {id}\n\nThe chain at {tip} misses {} object(s); set aside by `git hyperion doctor --repair`.\n",
            missing.len()
        )
        .into(),
        extra_headers: Vec::new(),
    };
    buf.clear();
    commit
        .write_to(&mut buf)
        .map_err(|e| crate::Error::object("could not write a commit", e))?;
    let commit = crate::git::pack::write_object(repo, Kind::Commit, &buf)?;
    let name = format!("{LOST_PREFIX}{id}");
    let log = crate::git::refs::LogLine {
        name: "doctor",
        email: "hyperion@localhost",
        at: now,
        message: "hyperion: lost",
    };
    let before = crate::git::refs::read(repo, &name)?;
    if let crate::git::refs::Swap::Moved { now } =
        crate::git::refs::cas(repo, &name, before, commit, &log)?
    {
        return Err(crate::Error::git(format!(
            "could not set {id} aside: {name} moved to {now:?}"
        )));
    }
    store.delete(id, tip)?;
    Ok(commit)
}

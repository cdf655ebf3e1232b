//! Commit messages as git reads them: the trailers of the last paragraph.

/// Every value of trailer `key` in a commit message's trailers (its last paragraph, as git
/// reads trailers), trimmed, in order. A line of the body above that paragraph never counts,
/// so a request's description (which a landed commit carries above hyperion's trailers)
/// cannot name another request as landed.
pub fn trailers<'m>(message: &'m str, key: &'m str) -> impl Iterator<Item = &'m str> {
    let body = message.trim_end();
    let last = body.rfind("\n\n").map_or(body, |at| &body[at + 2..]);
    last.lines().filter_map(move |l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// The first value of trailer `key` (see [`trailers`]).
pub fn trailer<'m>(message: &'m str, key: &'m str) -> Option<&'m str> {
    trailers(message, key).next()
}

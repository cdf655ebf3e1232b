/// Splits `items` into pages of `per_page` entries.
pub fn pages(items: usize, per_page: usize) -> usize {
    if per_page == 0 {
        return 0;
    }
    items / per_page
}

/// The items shown on page `page` (0-based).
pub fn page_range(page: usize, per_page: usize) -> std::ops::Range<usize> {
    let start = page * per_page;
    start..start + per_page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty() {
        assert_eq!(pages(0, 10), 0);
    }
}

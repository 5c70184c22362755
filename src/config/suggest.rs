//! "Did you mean" for mistyped setting names.

/// The candidate closest to `word`, when it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase().replace('-', "_");
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_typos() {
        let keys = ["epochs", "imgsz", "lr0", "weight_decay"];
        assert_eq!(super::closest("epohcs", keys), Some("epochs"));
        assert_eq!(super::closest("img_sz", keys), Some("imgsz"));
        assert_eq!(super::closest("weight-decay", keys), Some("weight_decay"));
        assert_eq!(super::closest("banana", keys), None);
    }
}

//! The shape every section's validation takes: a list of (holds, what must hold) pairs.

/// The first rule that does not hold, as the sentence that says what must; `Ok` if all do.
pub(crate) fn first_failure(rules: &[(bool, &'static str)]) -> Result<(), &'static str> {
    match rules.iter().find(|(holds, _)| !holds) {
        Some((_, why)) => Err(why),
        None => Ok(()),
    }
}

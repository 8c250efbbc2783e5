//! Optional deadlines for `select!` loops: a branch that waits for one that may not be set.

/// Resolves at `deadline` (never for `None`).
pub async fn until(deadline: Option<impl Into<tokio::time::Instant>>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

//! A board where long-running components (broker connection, store, scheduler) post their
//! state, and `/health` reads it. Plain `std` synchronisation: no runtime needed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

/// One component's last reported state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentState {
    pub ok: bool,
    pub detail: String,
}

/// Shared, cheaply cloned board of component states.
#[derive(Debug, Clone, Default)]
pub struct HealthBoard {
    inner: Arc<RwLock<BTreeMap<String, ComponentState>>>,
}

impl HealthBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the state of `component`.
    pub fn set(&self, component: &str, ok: bool, detail: impl Into<String>) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        map.insert(
            component.to_owned(),
            ComponentState {
                ok,
                detail: detail.into(),
            },
        );
    }

    /// A copy of every component's state.
    pub fn snapshot(&self) -> BTreeMap<String, ComponentState> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_state_replaces_earlier() {
        let b = HealthBoard::new();
        b.set("broker", false, "connecting");
        b.clone().set("broker", true, "connected");
        let s = b.snapshot();
        assert_eq!(s.len(), 1);
        assert!(s["broker"].ok);
    }
}

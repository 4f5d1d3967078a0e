//! The application state every handler receives: cheap to clone, no lock in sight.

use std::sync::Arc;
use std::time::Instant;

use crate::personas::Personas;
use crate::security::{Auth, HostGuard};
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub personas: Arc<Personas>,
    pub auth: Arc<Auth>,
    pub guard: Arc<HostGuard>,
    pub started: Instant,
}

impl AppState {
    pub fn new(store: Store, personas: Personas, auth: Auth, guard: HostGuard) -> Self {
        Self {
            store,
            personas: Arc::new(personas),
            auth: Arc::new(auth),
            guard: Arc::new(guard),
            started: Instant::now(),
        }
    }
}

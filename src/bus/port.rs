//! A shard's own end of the bus: what it keeps on its thread to send (its [`Outbox`]) and to
//! say where its rooms have members (its [`LocalInterest`]). Shared by the shard's endpoints.

use std::rc::Rc;

use super::interest::LocalInterest;
use super::outbox::Outbox;

/// One shard's outbox and interest marks.
#[derive(Debug, Clone)]
pub(crate) struct Port {
    pub(crate) interest: Rc<LocalInterest>,
    pub(crate) outbox: Rc<Outbox>,
}

pub(crate) mod fiber;
pub(crate) mod nogvl;
pub(crate) mod runqueue;

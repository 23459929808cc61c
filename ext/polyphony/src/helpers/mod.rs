pub(crate) mod consts;
pub(crate) mod fiber;
pub(crate) mod hash;
pub(crate) mod io;
pub(crate) mod nogvl;
pub(crate) mod runqueue;

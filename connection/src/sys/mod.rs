//! Platform code. Everything that calls the operating system directly lives
//! below here, so that another platform is one more module.

#[cfg(unix)]
mod accepting;
mod filling;
#[cfg(unix)]
mod ready;
#[cfg(unix)]
pub(crate) mod shm;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use accepting::is_out_of_descriptors;
pub(crate) use filling::{append_filled, Unfilled};
#[cfg(unix)]
pub(crate) use ready::{Interest, Ready, ReadySet};
#[cfg(unix)]
pub(crate) use unix::*;

#[cfg(not(unix))]
compile_error!("the connection crate supports Unix-like systems only for now");

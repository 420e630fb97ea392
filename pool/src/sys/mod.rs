//! Platform-specific calls: the only place in this crate with `unsafe`,
//! but for `fn_task`, which follows function pointers sent by a pool.
//!
//! Linux only for now: the parent-death signal (`PR_SET_PDEATHSIG`),
//! `memfd_create` and `/proc/self/exe` have no portable equivalent.

#[cfg(target_os = "linux")]
mod descriptors;
#[cfg(target_os = "linux")]
mod events;
#[cfg(target_os = "linux")]
mod image;
#[cfg(target_os = "linux")]
mod linux;

#[cfg(target_os = "linux")]
pub(crate) use descriptors::*;
#[cfg(target_os = "linux")]
pub(crate) use events::*;
#[cfg(target_os = "linux")]
pub(crate) use image::*;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!("the pool crate supports Linux only");

#[cfg(target_os = "linux")]
mod memory;

#[cfg(target_os = "linux")]
pub(crate) use memory::*;

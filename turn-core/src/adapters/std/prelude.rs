//! What a std module expects in scope, in this `no_std` crate.

pub(crate) use std::prelude::rust_2024::*;
pub(crate) use std::{format, vec};

pub mod adapter;
pub mod engineio;

pub mod engineio;

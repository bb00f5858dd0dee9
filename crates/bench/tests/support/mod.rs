pub mod server;
pub mod tok;

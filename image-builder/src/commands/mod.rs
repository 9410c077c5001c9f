//! One module per subcommand; each parses its arguments and calls the library.

pub mod build;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod export;
pub mod inspect;
pub mod iso;
pub mod keygen;
pub mod release;
pub mod run;
pub mod serve;

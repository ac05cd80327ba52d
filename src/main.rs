use std::process::ExitCode;

fn main() -> ExitCode {
    match lstmkd::cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<lstmkd::train::interrupt::Interrupted>() {
                Some(i) => ExitCode::from(i.exit_code()),
                None => ExitCode::FAILURE,
            }
        }
    }
}

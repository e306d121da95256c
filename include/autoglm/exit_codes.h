#pragma once
// Process exit codes, documented in README.md ("Exit codes").
namespace autoglm {
enum ExitCode : int {
  kExitOk = 0,            // success
  kExitCheckFailed = 1,   // a check failed: requirement not met, hash mismatch, corrupt file
  kExitUsage = 2,         // usage or configuration error
  kExitNotImplemented = 3 // the subcommand needs an engine feature that has not landed yet
};
}  // namespace autoglm

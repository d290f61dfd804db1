// The Relais network side: the DICOM listener (SCP) on a libuv loop.
//
// Thread: Serve() runs the loop on the calling thread until SIGINT or
// SIGTERM, then returns after pending commits are done.
#ifndef RELAIS_ROUTER_ROUTER_H_
#define RELAIS_ROUTER_ROUTER_H_

#include "base/status.h"
#include "rules/rules.h"

namespace relais::router {

// Opens the store named in `config`, listens on config.listener and serves
// associations until SIGINT/SIGTERM. Returns a non-OK Status when it cannot
// start (store cannot be opened, address in use, ...).
Status Serve(const rules::AppConfig& config);

}  // namespace relais::router

#endif  // RELAIS_ROUTER_ROUTER_H_

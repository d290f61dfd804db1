// TCP settings shared by the SCP and SCU sides. Internal to router/.
#ifndef RELAIS_ROUTER_NET_TCP_TUNING_H_
#define RELAIS_ROUTER_NET_TCP_TUNING_H_

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <uv.h>

namespace relais::router {

// Acknowledge received data at once. A peer with Nagle's algorithm on (many
// DICOM stacks) holds its next small segment — often the rest of a PDU or a
// C-STORE-RSP — until our ACK arrives, and a delayed ACK costs ~40 ms per
// object. Linux clears TCP_QUICKACK by itself, so call this after every read.
inline void RearmQuickAck(uv_tcp_t* tcp) {
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(tcp), &fd) == 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
  }
}

}  // namespace relais::router

#endif  // RELAIS_ROUTER_NET_TCP_TUNING_H_

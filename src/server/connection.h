#pragma once
// The sockets behind cpp-httplib's requests, found by address, so that the server can notice a
// client that went away (cancel its generation) and close its listening socket for a graceful stop.
#include <string>

namespace autoglm::server {

// The listening TCP socket bound to `port` in this process; -1 when none.
int find_listening_socket(int port);
// The connected socket with these local and remote ports and remote address; -1 when none.
int find_connection_socket(int local_port, const std::string& remote_addr, int remote_port);
// True when the peer has closed or reset the connection (data it sent and that is still unread
// does not count).
bool peer_closed(int fd);

}  // namespace autoglm::server

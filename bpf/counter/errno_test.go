package counter

import "golang.org/x/sys/unix"

// syscallENOBUFS: a UDP burst may overrun the sender's device queue; such a
// datagram never reaches the node and is in no count.
const syscallENOBUFS = unix.ENOBUFS

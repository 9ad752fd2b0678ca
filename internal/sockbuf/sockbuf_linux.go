package sockbuf

import "syscall"

// getRcvbuf reads SO_RCVBUF; Linux reports twice the size asked for (its
// bookkeeping overhead), so the result is halved to compare with the request.
func getRcvbuf(fd uintptr) (int, error) {
	n, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	return n / 2, err
}

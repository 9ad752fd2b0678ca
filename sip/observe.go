package sip

import (
	"context"

	"github.com/emiago/sipgo/sip"
)

// Observer is told about the SIP traffic of a Server, e.g. to count it. Direction is "in"
// (received) or "out" (sent). Calls are made on the SIP goroutines: implementations must be
// cheap and safe for concurrent use. Transaction-layer retransmissions are not reported.
type Observer interface {
	// Request reports a request, including ACK and CANCEL.
	Request(method, direction string)
	// Response reports a provisional or final response to a request of method.
	Response(method string, code int, direction string)
	// Register reports the outcome of a REGISTER: "ok", "unregistered", "unauthorized"
	// (challenged or bad credentials) or "failed".
	Register(outcome string)
}

type nopObserver struct{}

func (nopObserver) Request(string, string)       {}
func (nopObserver) Response(string, int, string) {}
func (nopObserver) Register(string)              {}

// observedTx reports every response sent on a server transaction.
type observedTx struct {
	sip.ServerTransaction
	obs    Observer
	method string
}

func (t observedTx) Respond(res *sip.Response) error {
	t.obs.Response(t.method, res.StatusCode, "out")
	return t.ServerTransaction.Respond(res)
}

// observeIn reports a received request and wraps its transaction so that responses are reported.
func (s *Server) observeIn(req *sip.Request, tx sip.ServerTransaction) sip.ServerTransaction {
	s.obs.Request(string(req.Method), "in")
	if tx == nil {
		return nil
	}
	return observedTx{ServerTransaction: tx, obs: s.obs, method: string(req.Method)}
}

// sendTx sends a prebuilt request in a new client transaction.
func (s *Server) sendTx(ctx context.Context, req *sip.Request) (sip.ClientTransaction, error) {
	s.obs.Request(string(req.Method), "out")
	return s.cli.TransactionRequest(ctx, req, noBuild)
}

// sendDirect sends a prebuilt request outside any transaction (ACK for a 2xx).
func (s *Server) sendDirect(req *sip.Request) error {
	s.obs.Request(string(req.Method), "out")
	return s.cli.WriteRequest(req, noBuild)
}

// gotResponse reports a response received on a client transaction.
func (s *Server) gotResponse(res *sip.Response) {
	if res == nil {
		return
	}
	m := ""
	if cs := res.CSeq(); cs != nil {
		m = string(cs.MethodName)
	}
	s.obs.Response(m, res.StatusCode, "in")
}

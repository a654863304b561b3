package hamt

import "time"

// Hooks for the external tests of KuboCAS (package hamt_test); compiled only with the tests.

// SetKuboClock makes k's circuit breakers read the time from now, so a test can let a gateway's
// rest pass without waiting for it. Call it before k is used.
func SetKuboClock(k *KuboCAS, now func() time.Time) { k.now = now }

// KuboGatewayBases returns k's gateway base URLs after normalisation, in configured order.
func KuboGatewayBases(k *KuboCAS) []string {
	out := make([]string, len(k.gateways))
	for i, g := range k.gateways {
		out[i] = g.base
	}
	return out
}

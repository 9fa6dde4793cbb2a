package consul

// PauseRenewals makes l skip its renewals from now on, as if Consul had
// become unreachable, while the session stays alive on the servers.
func PauseRenewals(l *Lease) { l.paused.Store(true) }

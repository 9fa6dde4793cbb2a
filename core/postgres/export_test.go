package postgres

// Crash closes s the way a node that dies leaves it: its push claims are
// not handed back, so other stores must wait for the lease to run out.
func (s *Store) Crash() error { return s.close(false) }

package writeq

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// Every Put that returned nil is in C once Close returns, and every Put
// after Close is refused: the committer drains what it finds and loses
// nothing.
func TestCloseWaitsOutPutters(t *testing.T) {
	q := New[int](4)
	var (
		mu  sync.Mutex
		ok  int
		wg  sync.WaitGroup
		got = make(chan int, 1000)
	)
	stop := make(chan struct{})
	go func() { // a committer that drains until closing, then what is left
		defer close(stop)
		for {
			select {
			case r := <-q.C():
				got <- r
			case <-q.Closing():
				for len(q.C()) > 0 {
					got <- <-q.C()
				}
				return
			}
		}
	}()
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if q.Put(context.Background(), i) == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	require.True(t, q.Close())
	require.False(t, q.Close())
	<-stop
	require.Equal(t, ok, len(got))
	require.ErrorIs(t, q.Put(context.Background(), 1), ErrClosed)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	full := New[int](0)
	require.ErrorIs(t, full.Put(ctx, 1), context.Canceled)
}

// Do answers with what the committer sends back, and refuses once closed.
func TestDoWaitsForTheAnswer(t *testing.T) {
	q := New[chan error](1)
	go func() {
		for done := range q.C() {
			done <- errors.New("from the committer")
		}
	}()
	done := make(chan error, 1)
	require.EqualError(t, q.Do(context.Background(), done, done), "from the committer")
	q.Close()
	require.ErrorIs(t, q.Do(context.Background(), done, done), ErrClosed)
	close(q.ch)
}

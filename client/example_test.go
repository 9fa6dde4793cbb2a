package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/chatgate/chatgate/client"
)

func ExampleClient_Connect() {
	ctx := context.Background()
	c := client.New("http://localhost:8080")
	if _, err := c.Login(ctx, "alice", "correct horse", "laptop"); err != nil {
		log.Fatal(err)
	}
	var cursor uint64 // persisted from the last run
	conn, err := c.Connect(ctx, client.ConnectOptions{
		Cursor: cursor,
		OnEvent: func(e client.Event) {
			switch e.Type {
			case client.EventMessage:
				fmt.Printf("%s: %s\n", e.Message.From, e.Message.Content)
				// Persist e.Seq once the message is processed.
			case client.EventPresence:
				fmt.Printf("%s is %s\n", e.UserID, e.Status)
			}
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println("connected over", conn.Transport())
	if _, err := conn.Send(ctx, client.SendInput{To: "383911454958424064", Content: "hi bob"}); err != nil {
		log.Fatal(err)
	}
}

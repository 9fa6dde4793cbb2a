package gateway

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/chatgate/chatgate/core"
	"github.com/chatgate/chatgate/wire"
)

// errorHandler renders every error as {"error":{"code","message"}}: the
// core's own, echo's routing errors and panics alike.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		if errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil {
			return // the client went away (an abandoned long poll): nobody to answer
		}
		var ce *core.Error
		var he *echo.HTTPError
		switch {
		case errors.As(err, &ce):
		case errors.As(err, &he):
			switch he.Code {
			case http.StatusNotFound:
				ce = core.Errorf(core.KindNotFound, "not_found", "no such endpoint")
			case http.StatusMethodNotAllowed:
				ce = &core.Error{Kind: core.KindInvalid, Code: "method_not_allowed", Message: "method not allowed on this endpoint"}
				_ = c.JSON(http.StatusMethodNotAllowed, wire.ErrorBody(ce))
				return
			case http.StatusRequestEntityTooLarge:
				ce = wire.ErrBodyTooLarge
			default:
				ce = core.Errorf(core.KindInvalid, "bad_request", "%v", he.Message)
			}
		default:
			ce = core.AsError(err)
		}
		status := wire.Status(ce)
		if status >= 500 {
			log.Error("request failed", "method", c.Request().Method, "path", c.Path(), "err", err)
		}
		if status == http.StatusUnauthorized {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="chatgate"`)
		}
		if ce.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ce.RetryAfter.Seconds()))))
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(status)
			return
		}
		_ = c.JSON(status, wire.ErrorBody(ce))
	}
}

package core

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

func invalid(code, format string, args ...any) *Error {
	return Errorf(KindInvalid, code, format, args...)
}

// ValidUsername checks 3..32 characters of letters, digits, '_', '.', '-'.
func ValidUsername(s string) error {
	if len(s) < MinUsername || len(s) > MaxUsername {
		return invalid("invalid_username", "username must be %d to %d characters", MinUsername, MaxUsername)
	}
	for _, r := range s {
		if !(r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '.' || r == '-')) {
			return invalid("invalid_username", "username may hold only ASCII letters, digits, '_', '.' and '-'")
		}
	}
	return nil
}

// CleanName trims a display or group name and checks it is 1..max code
// points of valid UTF-8 without control characters.
func CleanName(s, field string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", invalid("invalid_utf8", "%s is not valid UTF-8", field)
	}
	n := utf8.RuneCountInString(s)
	if n == 0 || n > max {
		return "", invalid("invalid_"+field, "%s must be 1 to %d characters", field, max)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", invalid("invalid_"+field, "%s may not hold control characters", field)
		}
	}
	return s, nil
}

// ValidPassword checks the length rules.
func ValidPassword(s string) error {
	if utf8.RuneCountInString(s) < MinPassword || len(s) > MaxPassword {
		return invalid("invalid_password", "password must be at least %d characters and at most %d bytes", MinPassword, MaxPassword)
	}
	return nil
}

// ValidContent checks message content: valid UTF-8, 1..MaxMessageChars code
// points.
func ValidContent(s string) error {
	if !utf8.ValidString(s) {
		return invalid("invalid_utf8", "content is not valid UTF-8")
	}
	if s == "" {
		return invalid("content_empty", "content must not be empty")
	}
	if len(s) > MaxMessageChars && utf8.RuneCountInString(s) > MaxMessageChars {
		return invalid("content_too_long", "content holds more than %d characters", MaxMessageChars)
	}
	return nil
}

// ValidClientMsgID checks the optional idempotency key.
func ValidClientMsgID(s string) error {
	if len(s) > MaxClientMsgID || !utf8.ValidString(s) {
		return invalid("invalid_client_msg_id", "client_msg_id must be valid UTF-8 of at most %d bytes", MaxClientMsgID)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid("invalid_client_msg_id", "client_msg_id may not hold control characters")
		}
	}
	return nil
}

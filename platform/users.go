package platform

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// User is a person who can sign in.
type User struct {
	// ID is the database id.
	ID int64
	// Name is the unique user name.
	Name string
	// Role is admin or member.
	Role Role
	// HasPassword says whether a web password is set.
	HasPassword bool
	// CreatedAt is when the user was added.
	CreatedAt time.Time
}

// Actor returns the actor acting as u.
func (u User) Actor() Actor { return Actor{UserID: u.ID, Name: u.Name, Role: u.Role} }

const userColumns = `id, name, role, password_hash is not null, created_at`

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Name, &u.Role, &u.HasPassword, &u.CreatedAt)
	return u, err
}

func (s *Service) userByName(ctx context.Context, q querier, name string) (User, error) {
	u, err := scanUser(q.QueryRow(ctx, `select `+userColumns+` from users where name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, notFound("user", name, "see users:list")
	}
	if err != nil {
		return User{}, fmt.Errorf("load user %s: %w", name, err)
	}
	return u, nil
}

// selfOrAdmin allows an admin, or a user acting on themselves.
func selfOrAdmin(actor Actor, user, what string) error {
	if err := actor.valid(); err != nil {
		return err
	}
	if actor.IsAdmin() || (!actor.system && actor.Name == user) {
		return nil
	}
	return forbidden("only admins can " + what + " of other users")
}

func adminOnly(actor Actor, what string) error {
	if err := actor.valid(); err != nil {
		return err
	}
	if !actor.IsAdmin() {
		return forbidden("only admins can " + what)
	}
	return nil
}

// CreateUser adds a user. Only admins (and the system) may.
func (s *Service) CreateUser(ctx context.Context, actor Actor, name string, role Role) (User, error) {
	if err := adminOnly(actor, "add users"); err != nil {
		return User{}, err
	}
	if err := ValidateUserName(name); err != nil {
		return User{}, err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return User{}, err
	}
	u, err := scanUser(s.pool.QueryRow(ctx, `insert into users (name, role) values ($1, $2) returning `+userColumns, name, role))
	if c, ok := uniqueViolation(err); ok && c == "users_name_key" {
		return User{}, exists("user", name, "choose another name")
	}
	if err != nil {
		return User{}, fmt.Errorf("create user %s: %w", name, err)
	}
	s.log.Info("user created", "user", name, "role", role, "by", actor.Name)
	return u, nil
}

// User returns a user: any user to admins, only themselves to members.
func (s *Service) User(ctx context.Context, actor Actor, name string) (User, error) {
	if err := actor.valid(); err != nil {
		return User{}, err
	}
	if !actor.IsAdmin() && actor.Name != name {
		return User{}, notFound("user", name, "")
	}
	return s.userByName(ctx, s.pool, name)
}

// Users lists all users by name. Only admins may.
func (s *Service) Users(ctx context.Context, actor Actor) ([]User, error) {
	if err := adminOnly(actor, "list users"); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `select `+userColumns+` from users order by name`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	users, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (User, error) { return scanUser(r) })
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// SetRole changes a user's role. Only admins may, and not their own, so an
// admin cannot lock everyone out by mistake.
func (s *Service) SetRole(ctx context.Context, actor Actor, name string, role Role) error {
	if err := adminOnly(actor, "change roles"); err != nil {
		return err
	}
	if _, err := ParseRole(string(role)); err != nil {
		return err
	}
	if actor.Name == name && !actor.system {
		return forbidden("you cannot change your own role")
	}
	tag, err := s.pool.Exec(ctx, `update users set role = $2 where name = $1`, name, role)
	if err != nil {
		return fmt.Errorf("set role of %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("user", name, "see users:list")
	}
	s.log.Info("role changed", "user", name, "role", role, "by", actor.Name)
	return nil
}

// DeleteUser removes a user with their keys, sessions and tokens; their apps
// stay, owned by no one (admins still manage them).
func (s *Service) DeleteUser(ctx context.Context, actor Actor, name string) error {
	if err := adminOnly(actor, "remove users"); err != nil {
		return err
	}
	if actor.Name == name && !actor.system {
		return forbidden("you cannot remove yourself")
	}
	tag, err := s.pool.Exec(ctx, `delete from users where name = $1`, name)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("user", name, "see users:list")
	}
	s.log.Info("user deleted", "user", name, "by", actor.Name)
	return nil
}

// MinPasswordLen is the shortest web password.
const MinPasswordLen = 8

// SetPassword sets a user's web password (stored as a bcrypt hash) and
// ends every web session of theirs, so a session cookie stolen before the
// change stops working with it. Users may set their own; admins anyone's.
// API tokens stay valid: the user lists and revokes them with APITokens
// and DeleteAPIToken. A user changing their own password in a web session
// uses SetPasswordKeepSession, which keeps that session.
func (s *Service) SetPassword(ctx context.Context, actor Actor, name, password string) error {
	return s.setPassword(ctx, actor, name, password, "")
}

// SetPasswordKeepSession is SetPassword that keeps one web session of the
// user's, the one whose token is keepSession (the session making the
// change), and ends all their others. A token that is not one of the
// user's sessions keeps nothing.
func (s *Service) SetPasswordKeepSession(ctx context.Context, actor Actor, name, password, keepSession string) error {
	return s.setPassword(ctx, actor, name, password, keepSession)
}

func (s *Service) setPassword(ctx context.Context, actor Actor, name, password, keepSession string) error {
	if err := selfOrAdmin(actor, name, "set passwords"); err != nil {
		return err
	}
	if len(password) < MinPasswordLen {
		return invalid("password", "", fmt.Sprintf("use at least %d characters", MinPasswordLen))
	}
	if len(password) > 72 {
		return invalid("password", "", "use at most 72 bytes")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	keep := "" // matches no stored hash: they are hex
	if keepSession != "" {
		keep = tokenHash(keepSession)
	}
	var ended int64
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var id int64
		err := tx.QueryRow(ctx, `update users set password_hash = $2 where name = $1 returning id`, name, string(hash)).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound("user", name, "see users:list")
		}
		if err != nil {
			return fmt.Errorf("set password of %s: %w", name, err)
		}
		tag, err := tx.Exec(ctx, `delete from web_sessions where user_id = $1 and token_hash <> $2`, id, keep)
		if err != nil {
			return fmt.Errorf("end sessions of %s: %w", name, err)
		}
		ended = tag.RowsAffected()
		return nil
	})
	if err != nil {
		return err
	}
	s.log.Info("password set", "user", name, "sessions_ended", ended, "by", actor.Name)
	return nil
}

// dummyHash makes a failed lookup cost as much as a wrong password.
const dummyHash = "$2a$10$glhwHbXrG7ge11bXddF2H.6UeWhWyG5LYKytvAv3CetS8kgnWDLIS"

// CheckPassword returns the actor for a user name and password, or
// ErrBadCredentials without saying which was wrong.
func (s *Service) CheckPassword(ctx context.Context, name, password string) (Actor, error) {
	var u User
	var hash *string
	err := s.pool.QueryRow(ctx, `select id, name, role, password_hash from users where name = $1`, name).Scan(&u.ID, &u.Name, &u.Role, &hash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return Actor{}, fmt.Errorf("check password: %w", err)
	}
	if err != nil || hash == nil {
		_ = bcrypt.CompareHashAndPassword([]byte(dummyHash), []byte(password))
		return Actor{}, fmt.Errorf("wrong user name or password: %w", ErrBadCredentials)
	}
	if bcrypt.CompareHashAndPassword([]byte(*hash), []byte(password)) != nil {
		return Actor{}, fmt.Errorf("wrong user name or password: %w", ErrBadCredentials)
	}
	return u.Actor(), nil
}

// ActorForUser returns the actor for a user name, for trusted callers (the
// local admin CLI acting as someone).
func (s *Service) ActorForUser(ctx context.Context, name string) (Actor, error) {
	u, err := s.userByName(ctx, s.pool, name)
	if err != nil {
		return Actor{}, err
	}
	return u.Actor(), nil
}

// Key is a user's SSH public key.
type Key struct {
	// ID is the database id.
	ID int64
	// User is the owner's name.
	User string
	// Name labels the key (default: its comment).
	Name string
	// Fingerprint is the SHA256 fingerprint as ssh-keygen -l prints it.
	Fingerprint string
	// PublicKey is the authorized_keys line, without options.
	PublicKey string
	// CreatedAt is when it was added.
	CreatedAt time.Time
}

// ParseAuthorizedKey parses one authorized_keys line ("ssh-ed25519 AAAA…
// comment") and returns the key, its SHA256 fingerprint and its comment.
func ParseAuthorizedKey(line string) (ssh.PublicKey, string, string, error) {
	pub, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(line)))
	if err != nil {
		return nil, "", "", invalid("SSH public key", "", "give one line as in ~/.ssh/id_ed25519.pub (type, key, optional comment)")
	}
	return pub, ssh.FingerprintSHA256(pub), comment, nil
}

// AddKey adds an SSH public key to a user. name may be empty: the key's
// comment is used, or a name made from the fingerprint. A key can belong to
// only one user; adding it twice gives an *ExistsError, also when two
// requests race.
func (s *Service) AddKey(ctx context.Context, actor Actor, user, name, authorizedKey string) (Key, error) {
	if err := selfOrAdmin(actor, user, "add keys"); err != nil {
		return Key{}, err
	}
	pub, fp, comment, err := ParseAuthorizedKey(authorizedKey)
	if err != nil {
		return Key{}, err
	}
	if name == "" {
		name = comment
		if ValidateKeyName(name) != nil {
			name = "key-" + strings.NewReplacer("+", "", "/", "").Replace(strings.TrimPrefix(fp, "SHA256:"))[:8]
		}
	}
	if err := ValidateKeyName(name); err != nil {
		return Key{}, err
	}
	u, err := s.userByName(ctx, s.pool, user)
	if err != nil {
		return Key{}, err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	k := Key{User: user, Name: name, Fingerprint: fp, PublicKey: line}
	err = s.pool.QueryRow(ctx, `insert into ssh_keys (user_id, name, fingerprint, public_key) values ($1, $2, $3, $4) returning id, created_at`,
		u.ID, name, fp, line).Scan(&k.ID, &k.CreatedAt)
	if c, ok := uniqueViolation(err); ok {
		if c == "ssh_keys_user_name_key" {
			return Key{}, exists("key name", name, "user "+user+" already has a key by that name: choose another")
		}
		return Key{}, exists("SSH key", fp, "it is already registered; remove it first (keys:remove)")
	}
	if err != nil {
		return Key{}, fmt.Errorf("add key: %w", err)
	}
	s.log.Info("key added", "user", user, "key", name, "fingerprint", fp, "by", actor.Name)
	return k, nil
}

// RemoveKey removes one of a user's keys, by name or fingerprint.
func (s *Service) RemoveKey(ctx context.Context, actor Actor, user, nameOrFingerprint string) error {
	if err := selfOrAdmin(actor, user, "remove keys"); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `delete from ssh_keys k using users u
		where u.id = k.user_id and u.name = $1 and (k.name = $2 or k.fingerprint = $2)`, user, nameOrFingerprint)
	if err != nil {
		return fmt.Errorf("remove key: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("key", nameOrFingerprint, "see keys:list")
	}
	s.log.Info("key removed", "user", user, "key", nameOrFingerprint, "by", actor.Name)
	return nil
}

// Keys lists a user's keys by name; the system and admins may list anyone's,
// and user "" lists all users' keys for them.
func (s *Service) Keys(ctx context.Context, actor Actor, user string) ([]Key, error) {
	if user == "" {
		if err := adminOnly(actor, "list all keys"); err != nil {
			return nil, err
		}
	} else if err := selfOrAdmin(actor, user, "list keys"); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `select k.id, u.name, k.name, k.fingerprint, k.public_key, k.created_at
		from ssh_keys k join users u on u.id = k.user_id where $1 = '' or u.name = $1 order by u.name, k.name`, user)
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Key, error) {
		var k Key
		err := r.Scan(&k.ID, &k.User, &k.Name, &k.Fingerprint, &k.PublicKey, &k.CreatedAt)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	return keys, nil
}

// ActorForKey returns the actor whose SSH key has this SHA256 fingerprint
// (ssh.FingerprintSHA256), for SSH public-key auth. An unknown key gives
// ErrBadCredentials.
func (s *Service) ActorForKey(ctx context.Context, fingerprint string) (Actor, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `select u.id, u.name, u.role, u.password_hash is not null, u.created_at
		from ssh_keys k join users u on u.id = k.user_id where k.fingerprint = $1`, fingerprint))
	if errors.Is(err, pgx.ErrNoRows) {
		return Actor{}, fmt.Errorf("unknown SSH key %s: ask an admin to add it (keys:add): %w", fingerprint, ErrBadCredentials)
	}
	if err != nil {
		return Actor{}, fmt.Errorf("look up key: %w", err)
	}
	return u.Actor(), nil
}

// newToken returns a random token and the hash stored in its place.
func newToken() (token, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("make token: %w", err)
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, tokenHash(token), nil
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateSession starts a web session for the actor (a user, not the
// system) and returns its token; only the token's hash is stored.
func (s *Service) CreateSession(ctx context.Context, actor Actor, ttl time.Duration) (string, error) {
	if err := actor.valid(); err != nil || actor.system {
		return "", forbidden("sessions are for users")
	}
	token, hash, err := newToken()
	if err != nil {
		return "", err
	}
	if _, err := s.pool.Exec(ctx, `insert into web_sessions (token_hash, user_id, expires_at) values ($1, $2, $3)`,
		hash, actor.UserID, time.Now().Add(ttl)); err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	return token, nil
}

// ActorForSession returns the actor of a live session token, or
// ErrBadCredentials.
func (s *Service) ActorForSession(ctx context.Context, token string) (Actor, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `select u.id, u.name, u.role, u.password_hash is not null, u.created_at
		from web_sessions ws join users u on u.id = ws.user_id where ws.token_hash = $1 and ws.expires_at > now()`, tokenHash(token)))
	if errors.Is(err, pgx.ErrNoRows) {
		return Actor{}, fmt.Errorf("session expired or unknown: sign in again: %w", ErrBadCredentials)
	}
	if err != nil {
		return Actor{}, fmt.Errorf("look up session: %w", err)
	}
	return u.Actor(), nil
}

// DeleteSession ends a session (sign out) and any expired ones.
func (s *Service) DeleteSession(ctx context.Context, token string) error {
	if _, err := s.pool.Exec(ctx, `delete from web_sessions where token_hash = $1 or expires_at <= now()`, tokenHash(token)); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}

// CreateAPIToken makes a named API token for the actor and returns it; it
// is shown once, only its hash is stored.
func (s *Service) CreateAPIToken(ctx context.Context, actor Actor, name string) (string, error) {
	if err := actor.valid(); err != nil || actor.system {
		return "", forbidden("API tokens are for users")
	}
	if err := ValidateKeyName(name); err != nil {
		return "", invalid("token name", shown(name), "use letters, digits and . _ @ + -, at most 64 characters")
	}
	token, hash, err := newToken()
	if err != nil {
		return "", err
	}
	_, err = s.pool.Exec(ctx, `insert into api_tokens (user_id, name, token_hash) values ($1, $2, $3)`, actor.UserID, name, hash)
	if c, ok := uniqueViolation(err); ok && c == "api_tokens_user_name_key" {
		return "", exists("API token", name, "choose another name or delete that token")
	}
	if err != nil {
		return "", fmt.Errorf("create API token: %w", err)
	}
	s.log.Info("API token created", "user", actor.Name, "token", name)
	return "berth_" + token, nil
}

// ActorForAPIToken returns the actor owning an API token, or
// ErrBadCredentials.
func (s *Service) ActorForAPIToken(ctx context.Context, token string) (Actor, error) {
	u, err := scanUser(s.pool.QueryRow(ctx, `update api_tokens t set last_used_at = now() from users u
		where u.id = t.user_id and t.token_hash = $1
		returning u.id, u.name, u.role, u.password_hash is not null, u.created_at`, tokenHash(strings.TrimPrefix(token, "berth_"))))
	if errors.Is(err, pgx.ErrNoRows) {
		return Actor{}, fmt.Errorf("unknown API token: %w", ErrBadCredentials)
	}
	if err != nil {
		return Actor{}, fmt.Errorf("look up API token: %w", err)
	}
	return u.Actor(), nil
}

// APIToken describes one of a user's API tokens; the token itself is
// never stored, so it is not here.
type APIToken struct {
	// Name labels the token.
	Name string
	// CreatedAt is when it was made.
	CreatedAt time.Time
	// LastUsedAt is when it last authenticated a request; zero if never.
	LastUsedAt time.Time
}

// APITokens lists the actor's own API tokens by name.
func (s *Service) APITokens(ctx context.Context, actor Actor) ([]APIToken, error) {
	if err := actor.valid(); err != nil || actor.system {
		return nil, forbidden("API tokens are for users")
	}
	rows, err := s.pool.Query(ctx, `select name, created_at, last_used_at
		from api_tokens where user_id = $1 order by name`, actor.UserID)
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	toks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (APIToken, error) {
		var (
			t    APIToken
			used *time.Time
		)
		err := r.Scan(&t.Name, &t.CreatedAt, &used)
		if used != nil {
			t.LastUsedAt = *used
		}
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list API tokens: %w", err)
	}
	return toks, nil
}

// DeleteAPIToken deletes one of the actor's tokens by name.
func (s *Service) DeleteAPIToken(ctx context.Context, actor Actor, name string) error {
	if err := actor.valid(); err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `delete from api_tokens where user_id = $1 and name = $2`, actor.UserID, name)
	if err != nil {
		return fmt.Errorf("delete API token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return notFound("API token", name, "")
	}
	return nil
}

# frozen_string_literal: true

module Tipi
  # The Rack 2 environment of a request. The constant part is made once per connection here;
  # H1P::Parser#parse_rack_env (and Polyphony::HTTP2::Server#next_event for HTTP/2) copies it
  # for each request and adds REQUEST_METHOD, PATH_INFO,
  # QUERY_STRING, SERVER_PROTOCOL, CONTENT_TYPE, CONTENT_LENGTH and HTTP_* (repeated fields
  # joined with ", ", cookies with "; "), SERVER_NAME from the Host header (else the
  # listener's), and for a Unix socket SERVER_PORT from Host (else 80). The connection adds
  # rack.hijack, and a rack.input of its own for a request with a body.
  module RackEnv
    EMPTY = ''.b.freeze
    VERSION = [1, 3].freeze

    module_function

    # What every request on a listener has (frozen): a connection's base env is a copy of it
    # with REMOTE_ADDR (and rack.hijack) added.
    # @param server [Hash] :host, :port (the listener's), :scheme
    def listener_base(server)
      {
        'SCRIPT_NAME' => EMPTY,
        'SERVER_NAME' => server[:host].to_s,
        'SERVER_PORT' => server[:port]&.to_s,
        'rack.version' => VERSION,
        'rack.url_scheme' => server[:scheme] || 'http',
        'rack.errors' => $stderr,
        'rack.multithread' => false,
        'rack.multiprocess' => false,
        'rack.run_once' => false,
        'rack.hijack?' => true,
        # A request with a body gets its own; a copy that already has the key needs no room
        # made for it (adding a key to a copied Hash can mean rebuilding its table).
        'rack.input' => Input::EMPTY,
        # Set for each request: there already, they take no room in its copy, whose table
        # then has room for the request's header fields (a copy is as large as what it
        # copies, and outgrowing it means hashing every key again).
        'REQUEST_METHOD' => nil, 'PATH_INFO' => nil, 'QUERY_STRING' => nil, 'SERVER_PROTOCOL' => nil
      }.freeze
    end

    # A connection's base env to add REMOTE_ADDR (and rack.hijack) to: a copy of the
    # listener's (`server[:base_env]`, else made now), made without rehashing its keys.
    # (`Hash[]` copies in C; `dup` also calls `initialize_copy` through a method lookup.)
    def base(server)
      Hash[server[:base_env] || listener_base(server)] # rubocop:disable Style/HashConversion
    end
  end
end

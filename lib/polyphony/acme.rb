# frozen_string_literal: true

module Polyphony
  # Certificates from an ACME CA (RFC 8555: Let's Encrypt, ZeroSSL, a local Pebble). An order
  # runs on a thread of its own; the fiber that asked for it waits without blocking the others.
  module ACME
    LETS_ENCRYPT = 'https://acme-v02.api.letsencrypt.org/directory'
    LETS_ENCRYPT_STAGING = 'https://acme-staging-v02.api.letsencrypt.org/directory'

    module_function

    # Orders a certificate and waits for it; yields each log line (ordering, challenge served,
    # retries) as it happens. Raises Polyphony::ACME::Error saying why it failed.
    #
    # @param options [Hash] directory: (URL), names: [String], challenge: 'http-01' |
    #   'tls-alpn-01', challenge_dir: (where responses are written for the server to serve),
    #   ca: (PEM of the CA that signs the ACME server's own certificate; default: the system's),
    #   account: (JSON saved from an earlier result), contact: ['mailto:...'], eab_kid:,
    #   eab_hmac: (external account binding), attempts: (5), timeout: (seconds, 120)
    # @param context [Polyphony::TLS::ServerContext, nil] serves TLS-ALPN-01 responses at once
    # @return [Hash] 'chain' and 'key' (PEM), 'account' (JSON, a secret to keep)
    # @raise [Polyphony::ACME::Refused] the CA will not issue for a name (rejectedIdentifier,
    #   unsupportedIdentifier, caa): trying again cannot help
    # @raise [Polyphony::ACME::ConfigError] the configuration is wrong (the CA bundle, the
    #   directory URL, the saved account): the message says what to change
    # @raise [Polyphony::ACME::Error] anything else (it may pass: try again later)
    def obtain(options, context = nil, &block)
      run(Order.start(options.transform_keys(&:to_s), context), &block)
    end

    # Creates an account with the CA (agreeing to its terms of service) and returns its
    # credentials (JSON, a secret), to be saved at once and given to every later order as
    # `account:`. Options as for #obtain (directory:, ca:, contact:, eab_kid:, eab_hmac:).
    def register(options, &block)
      options = options.transform_keys(&:to_s).merge('register' => true)
      run(Order.start(options, nil), &block)['account']
    end

    # Waits for a started order (or registration); yields its log lines as they come.
    def run(order)
      events = IO.for_fd(order.fileno, autoclose: false)
      while events.poly_read(4096)
        order.messages.each { |message| yield message } if block_given?
      end
      order.messages.each { |message| yield message } if block_given?
      order.result
    end
    private_class_method :run
  end
end

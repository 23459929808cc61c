# frozen_string_literal: true

require 'optparse'

module Tipi
  # The `tipi` command.
  module CLI
    USAGE = 'Usage: tipi [options] [app.ru | directory]   (default app: ./config.ru)'

    module_function

    def run(argv)
      options = parse(argv)
      $stdout.sync = true # the access log reaches its reader even if a worker is killed
      app = load_app(options[:app])
      host, port = options[:listen]
      logger = options[:quiet] ? nil : method(:log)
      server = Server.new(app, host: host, port: port, logger: logger, timeout: options[:timeout],
                               max_body: options[:max_body], max_connections: options[:max_connections])
      puts "Tipi #{Tipi::VERSION} (Polyphony #{Polyphony::VERSION}, #{Polyphony.backend_kind} backend)"
      puts "* app: #{options[:app]}"
      puts "* listening on http://#{host}:#{server.port}"
      $stdout.flush
      options[:workers] ? supervise(server, options[:workers]) : serve(server)
    ensure
      server&.close
    end

    # Serves in this process until SIGINT or SIGTERM, then stops gracefully.
    def serve(server)
      serving = spin { server.run }
      stop = Polyphony::Event.new
      %w[INT TERM].each { |signal| trap(signal) { stop.signal(signal) } }
      spin do
        signal = stop.await
        puts "Tipi stopping (SIG#{signal}, pid #{Process.pid})"
        $stdout.flush
        server.shutdown
        serving.stop
      end
      serving.await
    end

    # Forks `count` workers that share the listener, and starts a new one when one dies.
    # SIGINT/SIGTERM: every worker stops gracefully, then the supervisor exits.
    def supervise(server, count)
      stopping = false
      pids = {}
      slots = Array.new(count) do |slot|
        spin do
          until stopping
            pid = Polyphony.fork { serve(server) }
            pids[slot] = pid
            puts "* worker #{slot + 1}: pid #{pid}"
            $stdout.flush
            Process.wait(pid)
            puts "Tipi: worker #{slot + 1} (pid #{pid}) exited (#{$?}), starting another" unless stopping
          end
        end
      end
      %w[INT TERM].each do |signal|
        trap(signal) do
          stopping = true
          pids.each_value { |pid| Process.kill('TERM', pid) rescue nil } # rubocop:disable Style/RescueModifier
        end
      end
      Fiber.await(slots)
      puts 'Tipi stopped'
    end

    def parse(argv)
      options = { listen: ['0.0.0.0', 1234], quiet: false, timeout: 30 }
      parser = OptionParser.new do |o|
        o.banner = USAGE
        o.on('-l', '--listen [HOST:]PORT', 'where to listen (default 0.0.0.0:1234)') do |value|
          options[:listen] = listen_address(value)
        end
        o.on('-q', '--quiet', 'no access log') { options[:quiet] = true }
        o.on('-w', '--workers N', Integer, 'forked worker processes sharing the listener') do |v|
          abort 'tipi: --workers must be positive' unless v.positive?
          options[:workers] = v
        end
        o.on('--timeout SECONDS', Float, 'for a request head, between requests, for a body (30)') do |v|
          abort 'tipi: --timeout must be positive' unless v.positive?
          options[:timeout] = v
        end
        o.on('--max-body BYTES', Integer, 'largest request body (413 beyond; no limit by default)') do |v|
          abort 'tipi: --max-body must be positive' unless v.positive?
          options[:max_body] = v
        end
        o.on('--max-connections N', Integer, 'connections served at once') do |v|
          abort 'tipi: --max-connections must be positive' unless v.positive?
          options[:max_connections] = v
        end
        o.on('-v', '--version', 'print the version') do
          puts "Tipi #{Tipi::VERSION}"
          exit
        end
        o.on('-h', '--help', 'this help') do
          puts o
          exit
        end
      end
      rest = parser.parse(argv)
      abort "tipi: one app file at most, got #{rest.join(' ')}\n#{USAGE}" if rest.size > 1
      options[:app] = rest.first || 'config.ru'
      options
    rescue OptionParser::ParseError => e
      abort "tipi: #{e.message}\n#{USAGE}"
    end

    def listen_address(value)
      host, port = value.include?(':') ? value.split(/:(?=\d+\z)/, 2) : ['0.0.0.0', value]
      abort "tipi: bad listen address #{value.inspect} (expected [host:]port)" unless port&.match?(/\A\d+\z/)

      [host.delete_prefix('[').delete_suffix(']'), port.to_i]
    end

    def load_app(path)
      return Static.new(path) if File.directory?(path)

      abort "tipi: no such app file #{path}\n#{USAGE}" unless File.file?(path)
      require 'rack'
      require 'uri' # Rack 2.2's Lint uses URI without requiring it (Puma loads it too)
      app = Rack::Builder.parse_file(path)
      app.is_a?(Array) ? app.first : app # Rack 2 returns [app, options]
    end

    def log(env, status, seconds)
      line = "#{env['REMOTE_ADDR']} \"#{env['REQUEST_METHOD']} #{env['PATH_INFO']}" \
             "#{"?#{env['QUERY_STRING']}" unless env['QUERY_STRING'].empty?} #{env['SERVER_PROTOCOL']}\" " \
             "#{status} #{format('%.4f', seconds)}s"
      $stdout.puts(line)
    end
  end
end

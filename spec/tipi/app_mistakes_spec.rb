# frozen_string_literal: true

require 'socket'

# An app's mistakes never desync a connection nor blame the client: a 500 (never a 400, never
# an empty reply) and a line on stderr, or what a Content-Length announced and a close.
RSpec.describe 'tipi and an app that gets its responses wrong' do
  before(:all) do
    @tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'mistakes.ru'))
  end

  after(:all) { @tipi.stop }

  # Two pipelined requests; returns all that came back until the server closed.
  def exchange(path)
    socket = TCPSocket.new('127.0.0.1', @tipi.port)
    socket.write("GET #{path} HTTP/1.1\r\nHost: x\r\n\r\nGET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
    socket.read.tap { socket.close }
  end

  %w[/status-letters /status-four-digits /status-informational /field-crlf /field-nul /field-name
     /nil-response /nil-body /pair /short /raising-body].each do |path|
    it "answers #{path} with a 500, logs why, and ends the connection" do
      response = exchange(path)
      expect(response).to start_with("HTTP/1.1 500 Internal Server Error\r\n")
      expect(response).to include("Connection: close\r\n")
      expect(response.scan('HTTP/1.1').size).to eq(1) # the next request is not read as part of it
      expect(response).not_to include('evil')
      expect(@tipi.read_until(/^tipi: /)).to match(/InvalidResponse|the body broke/)
    end
  end

  it 'sends no more than a Content-Length announces, and ends the connection' do
    expect(exchange('/long')).to eq("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhe")
    expect(exchange('/long-stream')).to eq("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhe")
    2.times { expect(@tipi.read_until(/^tipi: /)).to include('longer than its Content-Length (2)') }
  end

  it 'ends the connection after a streamed body shorter than its Content-Length' do
    expect(exchange('/short-stream')).to eq("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    expect(@tipi.read_until(/^tipi: /)).to include('Content-Length says 10 bytes, the body has 5')
  end
end

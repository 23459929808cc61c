# frozen_string_literal: true

require 'stringio'
require 'h1p'

RSpec.describe 'H1P::Parser#parse_rack_env' do
  let(:base) do
    { 'SCRIPT_NAME' => '', 'SERVER_NAME' => '10.0.0.1', 'SERVER_PORT' => '8080', 'rack.url_scheme' => 'http' }.freeze
  end

  def envs(raw, base = self.base)
    parser = H1P::Parser.new(StringIO.new(raw))
    result = []
    while (env = parser.parse_rack_env(base))
      result << env
      parser.read_body
    end
    result
  end

  it 'builds the CGI part of a Rack env on a copy of the base' do
    env = envs("GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com:9000\r\nUser-Agent: curl\r\nX-Custom-Thing: 1\r\n\r\n").first
    expect(env).to eq(base.merge('REQUEST_METHOD' => 'GET', 'PATH_INFO' => '/a/b', 'QUERY_STRING' => 'x=1&y=2',
                                 'SERVER_PROTOCOL' => 'HTTP/1.1', 'SERVER_NAME' => 'example.com',
                                 'HTTP_HOST' => 'example.com:9000', 'HTTP_USER_AGENT' => 'curl',
                                 'HTTP_X_CUSTOM_THING' => '1'))
    expect(base).not_to include('REQUEST_METHOD')
  end

  it 'joins repeated fields (cookies with "; "), and gives CONTENT_TYPE and CONTENT_LENGTH' do
    env = envs("post /u HTTP/1.0\r\naccept: a\r\nCookie: a=1\r\nAccept: b\r\ncookie: b=2\r\n" \
               "Content-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc").first
    expect(env).to include('REQUEST_METHOD' => 'POST', 'QUERY_STRING' => '', 'SERVER_PROTOCOL' => 'HTTP/1.0',
                           'HTTP_ACCEPT' => 'a, b', 'HTTP_COOKIE' => 'a=1; b=2', 'CONTENT_TYPE' => 'text/plain',
                           'CONTENT_LENGTH' => '3', 'SERVER_NAME' => '10.0.0.1')
    expect(env.keys).not_to include('HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH')
  end

  it "takes SERVER_PORT from Host (else 80) when the base has none, as for a Unix socket" do
    unix = base.merge('SERVER_PORT' => nil)
    ports = envs("GET / HTTP/1.1\r\nHost: [::1]:4000\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.0\r\n\r\n", unix)
            .map { |env| env.values_at('SERVER_NAME', 'SERVER_PORT') }
    expect(ports).to eq([['[::1]', '4000'], %w[x 80], ['10.0.0.1', '80']])
  end

  it 'answers nil at a clean end, raises on a malformed request, and parses requests only' do
    expect(envs('')).to eq([])
    expect { envs("GET / HTTP/1.1\r\nBad Header: x\r\n\r\n") }.to raise_error(H1P::Error)
    expect { H1P::Parser.new(StringIO.new("HTTP/1.1 200 OK\r\n\r\n"), :client).parse_rack_env({}) }
      .to raise_error(H1P::Error, /requests/)
  end
end

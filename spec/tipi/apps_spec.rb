# frozen_string_literal: true

require 'tmpdir'

# Real apps from Debian packages, served unmodified by the real `tipi` command, talked to with curl.
RSpec.describe 'tipi serving real apps' do
  def curl(*args)
    out, err, status = run_command('curl', '-s', '--max-time', '20', *args)
    expect(status).to be_success, err
    out
  end

  it 'serves a Sinatra app: route params, query params, a form POST and a cookie session' do
    tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'sinatra', 'config.ru'))
    base = "http://127.0.0.1:#{tipi.port}"
    expect(curl("#{base}/hello/world?punctuation=%21")).to eq('Hello world!')
    Dir.mktmpdir do |dir|
      jar = File.join(dir, 'cookies')
      form = ['-c', jar, '-b', jar, '--data-urlencode', 'title=Fibers & fun', '-d', 'author=Ann', "#{base}/form"]
      expect(curl(*form)).to eq('Fibers & fun by Ann (post 1 in this session)')
      expect(curl(*form)).to eq('Fibers & fun by Ann (post 2 in this session)')
    end
    expect(curl('-o', '/dev/null', '-w', '%{http_code}', "#{base}/nowhere")).to eq('404')
  ensure
    tipi&.stop
  end

  it 'serves a minimal Rails 6.1 app rendering a page' do
    tipi = TipiProcess.new('-q', '-w', '2', '-l', '127.0.0.1:0',
                           File.join(ROOT, 'spec', 'fixtures', 'tipi', 'rails', 'config.ru'))
    base = "http://127.0.0.1:#{tipi.port}"
    page = curl('-i', "#{base}/?q=tipi")
    expect(page).to start_with("HTTP/1.1 200 OK\r\n")
    expect(page).to match(%r{content-type: text/html}i)
    expect(page).to match(%r{<h1>Rails 6\.1\.[\d.]+</h1><p>q=tipi</p>\z})
    expect(curl("#{base}/items/42.json")).to eq('{"id":"42","format":"application/json"}')
  ensure
    tipi&.stop
  end

  it 'answers Rails redirect_to, render status: 422, send_file, send_data, head and a 3.5 KB session cookie' do
    tipi = TipiProcess.new('-q', '-l', '127.0.0.1:0', File.join(ROOT, 'spec', 'fixtures', 'tipi', 'rails', 'config.ru'))
    base = "http://127.0.0.1:#{tipi.port}"
    redirect = curl('-i', "#{base}/old")
    expect(redirect).to start_with("HTTP/1.1 302 Found\r\n").and match(%r{^location: http://127\.0\.0\.1:\d+/items/1\r$}i)
    expect(curl('-w', ' %{http_code}', '-d', 'name=', "#{base}/items")).to eq('{"errors":["name is missing"]} 422')
    expect(curl('-w', ' %{http_code}', '-d', 'name=x', "#{base}/items")).to eq('{"created":"x"} 201')
    file = File.join(ROOT, 'spec', 'fixtures', 'tipi', 'rails', 'config.ru')
    expect(curl("#{base}/file")).to eq(File.read(file))
    data = curl('-i', "#{base}/data")
    expect(data.b).to match(/^content-disposition: attachment; filename="data\.bin"/i)
    expect(data.b).to end_with("\r\n\r\n\x00\x01binary\xff".b)
    nothing = curl('-i', "#{base}/nothing")
    expect(nothing).to start_with("HTTP/1.1 204 No Content\r\n")
    expect(nothing).not_to match(/content-length|transfer-encoding/i)
    Dir.mktmpdir do |dir|
      jar = File.join(dir, 'cookies')
      expect(curl('-c', jar, '-b', jar, "#{base}/cookie")).to eq('session of 1800 bytes')
      expect(File.read(jar).size).to be > 3000 # the cookie went back whole, with its head
      expect(curl('-c', jar, '-b', jar, "#{base}/cookie")).to eq('session of 1800 bytes')
    end
  ensure
    tipi&.stop
  end
end

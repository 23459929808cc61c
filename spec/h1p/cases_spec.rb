# frozen_string_literal: true

require 'json'
require 'stringio'
require 'h1p'

# Every shared HTTP/1 case (spec/fixtures/http1-cases.json: conformance and request-smuggling
# cases, also run by the Rust test), fed three ways: whole from a block, one byte at a time
# from a block, and through an IO's readpartial.
RSpec.describe 'H1P shared cases' do
  cases = JSON.parse(File.read(File.join(__dir__, '..', 'fixtures', 'http1-cases.json')))['cases']

  def bytes(latin1)
    latin1.encode('ISO-8859-1').b
  end

  # Messages in the cases' shape, then the stage of the error if any.
  def run_case(parser, mode)
    messages = []
    loop do
      headers = begin
        parser.parse_headers
      rescue H1P::Error
        return [messages, 'headers']
      end
      return [messages, nil] unless headers

      body = begin
        parser.read_body
      rescue H1P::Error
        return [messages, 'body']
      end
      messages << shape(headers, body, mode)
    end
  end

  def shape(headers, body, mode)
    pseudo = mode == 'client' ? %w[:protocol :status :status_message] : %w[:method :path :protocol]
    message = pseudo.to_h { |k| [k, headers[k].is_a?(String) ? headers[k].b : headers[k]] }
    fields = headers.reject { |k, _| k.start_with?(':') }
    message['headers'] = fields.transform_values { |v| v.is_a?(Array) ? v.map(&:b) : v.b }
    message['body'] = body&.b
    message
  end

  def expected_shape(messages)
    messages.map do |m|
      m.to_h do |k, v|
        case v
        when String then [k, bytes(v)]
        when Hash then [k, v.transform_values { |x| x.is_a?(Array) ? x.map { |y| bytes(y) } : bytes(x) }]
        else [k, v]
        end
      end
    end
  end

  it 'has all 83 cases' do
    expect(cases.size).to eq(83)
  end

  cases.each do |c|
    it "#{c['name']} (#{c['category']}): #{c['expect']}#{" at #{c['error_stage']}" if c['error_stage']}" do
      raw = bytes(c['raw'])
      mode = c['mode'].to_sym
      whole = [raw]
      byte_by_byte = raw.each_char.to_a
      sources = {
        'whole' => H1P::Parser.new(mode) { whole.shift },
        'byte by byte' => H1P::Parser.new(mode) { byte_by_byte.shift },
        'readpartial' => H1P::Parser.new(StringIO.new(raw), mode)
      }
      sources.each do |how, parser|
        messages, stage = run_case(parser, c['mode'])
        expect(stage).to eq(c['error_stage']), "#{how}: stage #{stage.inspect}, messages #{messages}"
        expect(messages).to eq(expected_shape(c['expected'])), how if c['expected']
      end
    end
  end
end
